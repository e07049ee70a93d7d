//! Conformance suites: the public tests every implementation of an sm-lib trait runs from
//! its own test suite, so that all stores, lock policies and terminal backends keep the same
//! written contracts. Enabled by the `conformance` feature.
//!
//! Each suite is a set of public functions, one per case, plus a macro that expands to one
//! test per case (so a failure names the case):
//! [`crate::message_store_conformance!`], [`crate::lock_policy_conformance!`],
//! [`crate::terminal_backend_conformance!`], [`crate::fanout_notifier_conformance!`]. A
//! test here checks that every public case of a suite is in its macro.

pub mod backend;
pub mod lock_policy;
pub mod notifier;
pub mod store;

#[cfg(test)]
mod every_case_is_run {
    /// The case names a suite's macro expands, and the public case functions of its module:
    /// they must be the same, so a new case cannot be written and then never run.
    fn listed_and_defined(source: &str) -> (Vec<String>, Vec<String>) {
        let start = source
            .find("(@cases $make;")
            .map(|i| i + "(@cases $make;".len());
        let listed = start
            .and_then(|i| source[i..].find(");").map(|j| &source[i..i + j]))
            .unwrap_or_default()
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>();
        let mut defined: Vec<String> = source
            .lines()
            .filter_map(|l| {
                l.strip_prefix("pub async fn ")
                    .or_else(|| l.strip_prefix("pub fn "))
            })
            .filter_map(|l| l.split(['(', '<']).next())
            .map(str::to_string)
            .collect();
        let mut listed = listed;
        listed.sort();
        defined.sort();
        (listed, defined)
    }

    #[test]
    fn every_public_case_of_every_suite_is_in_its_macro() {
        for (suite, source) in [
            ("backend", include_str!("backend.rs")),
            ("store", include_str!("store.rs")),
            ("lock_policy", include_str!("lock_policy.rs")),
            ("notifier", include_str!("notifier.rs")),
        ] {
            let (listed, defined) = listed_and_defined(source);
            assert!(!listed.is_empty(), "{suite}: no cases listed");
            assert_eq!(listed, defined, "{suite}: cases listed vs defined");
        }
    }
}
