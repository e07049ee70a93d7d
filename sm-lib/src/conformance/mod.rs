//! Conformance suites: the public tests every implementation of an sm-lib trait runs from
//! its own test suite, so that all stores, lock policies and terminal backends keep the same
//! written contracts. Enabled by the `conformance` feature.
//!
//! Each suite is a set of public functions, one per case, plus a macro that expands to one
//! test per case (so a failure names the case):
//! [`crate::message_store_conformance!`], [`crate::lock_policy_conformance!`],
//! [`crate::terminal_backend_conformance!`].

pub mod backend;
pub mod lock_policy;
pub mod store;
