//! bml
