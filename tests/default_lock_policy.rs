//! The default lock policy against real git repositories and worktrees.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use sm_lib::{DefaultLockPolicy, LockPolicy};
use sm_tests::{git, git_init};

#[test]
fn subdirectories_of_a_repository_share_its_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    git(&repo, &["init", "-q"]);
    let policy = DefaultLockPolicy::default();
    let top = policy.workspace_for(&repo).unwrap();
    assert_eq!(top.0, repo.canonicalize().unwrap());
    assert_eq!(policy.workspace_for(&repo.join("src/deep")).unwrap(), top);
}

#[test]
fn a_git_worktree_is_its_own_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    git_init(&repo);
    let wt = tmp.path().join("wt");
    git(&repo, &["worktree", "add", "-q", wt.to_str().unwrap()]);
    std::fs::create_dir_all(wt.join("sub")).unwrap();
    let policy = DefaultLockPolicy::default();
    let main_ws = policy.workspace_for(&repo).unwrap();
    let wt_ws = policy.workspace_for(&wt.join("sub")).unwrap();
    assert_eq!(wt_ws.0, wt.canonicalize().unwrap());
    assert_ne!(main_ws, wt_ws);
}

#[test]
fn outside_git_the_directory_itself_is_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain/sub");
    std::fs::create_dir_all(&dir).unwrap();
    let ws = DefaultLockPolicy::default().workspace_for(&dir).unwrap();
    assert_eq!(ws.0, dir.canonicalize().unwrap());
}
