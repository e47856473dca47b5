//! The ring-0 proxy-kernel of a Cabin domain.
//!
//! Not built yet: the KVM backend (issue "Run in a micro-VM") fills this
//! crate. Nothing in the tree uses it today, and `cabinc run --backend kvm`
//! says so rather than pretending.
#![no_std]
