//! SEV-SNP launch digest (filled in below).
