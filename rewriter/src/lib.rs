//! Rewriter (skeleton).
