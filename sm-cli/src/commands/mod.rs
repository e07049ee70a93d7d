//! One module per `sm` subcommand.

pub mod attach;
pub mod hook;
pub mod locks;
pub mod send;
pub mod sessions;
pub mod setup;
pub mod spawn;

/// `dir` made absolute, or the current directory.
pub fn absolute_dir(
    dir: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, crate::client::CliError> {
    let usage = |e: std::io::Error| crate::client::CliError::Usage(e.to_string());
    let dir = match dir {
        Some(d) => d,
        None => std::env::current_dir().map_err(usage)?,
    };
    std::path::absolute(&dir).map_err(usage)
}
