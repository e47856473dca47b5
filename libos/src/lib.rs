//! The Cabin libos (skeleton).
#![cfg_attr(not(test), no_std)]
