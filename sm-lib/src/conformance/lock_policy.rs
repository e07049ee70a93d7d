//! The [`LockPolicy`] conformance suite: what every policy must guarantee about workspaces.
//!
//! Run it with [`crate::lock_policy_conformance!`], giving an expression that builds the
//! policy.

use std::path::Path;

use crate::error::Error;
use crate::lock_policy::LockPolicy;

/// Generates one `#[test]` per conformance case for the policy built by `$make`.
#[macro_export]
macro_rules! lock_policy_conformance {
    ($make:expr) => {
        $crate::lock_policy_conformance!(@cases $make;
            one_directory_is_one_workspace_however_spelled,
            workspaces_are_absolute_and_contain_the_directory,
            missing_or_non_directory_paths_are_refused,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let policy = $make;
                $crate::conformance::lock_policy::$case(&policy);
            }
        )*
    };
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// `dir`, `dir/sub/..` and a symlink to `dir` map to one workspace.
pub fn one_directory_is_one_workspace_however_spelled(policy: &dyn LockPolicy) {
    let tmp = temp_dir();
    let dir = tmp.path().join("project");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let link = tmp.path().join("link");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&dir, &link).expect("symlink");
    let plain = policy.workspace_for(&dir).expect("plain");
    let dotted = policy
        .workspace_for(&dir.join("sub").join(".."))
        .expect("dotted");
    assert_eq!(plain, dotted);
    #[cfg(unix)]
    assert_eq!(plain, policy.workspace_for(&link).expect("symlink"));
}

/// A workspace is an absolute path that contains (or is) the directory.
pub fn workspaces_are_absolute_and_contain_the_directory(policy: &dyn LockPolicy) {
    let tmp = temp_dir();
    let dir = tmp.path().join("a/b/c");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ws = policy.workspace_for(&dir).expect("workspace");
    assert!(ws.0.is_absolute(), "{ws}");
    let canonical = dir.canonicalize().expect("canonical");
    assert!(
        canonical.starts_with(&ws.0),
        "{ws} does not contain {canonical:?}"
    );
}

/// Missing paths and files are `InvalidWorkingDir`.
pub fn missing_or_non_directory_paths_are_refused(policy: &dyn LockPolicy) {
    let tmp = temp_dir();
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "x").expect("write");
    for bad in [
        tmp.path().join("missing"),
        file,
        Path::new("").to_path_buf(),
    ] {
        let err = policy.workspace_for(&bad).expect_err("refused");
        assert!(
            matches!(err, Error::InvalidWorkingDir { .. }),
            "{bad:?}: {err:?}"
        );
    }
}
