//! Architecture-specific code. Cabin targets x86-64 only; everything that
//! depends on the instruction set lives below `x86_64/`.

pub mod x86_64;
