//! Example programs.
#![forbid(unsafe_code)]
