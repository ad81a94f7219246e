//! What the daemon serves: the command line ([`cli`], vblade's form plus xblade's options),
//! the TOML file ([`file`]), and the validated model both become ([`model`]). The daemon
//! runs only the model: a vblade command line is a one-export configuration.

pub mod cli;
pub mod file;
pub mod model;

pub use cli::Cli;
pub use file::ConfigError;
pub use model::{
    ConfigSource, ExportConfig, InterfaceConfig, IoEngine, ServeConfig, StateLocation, TuningFlags,
};
