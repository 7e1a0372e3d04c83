//! The builder: walks a [`Plan`] stage by stage, turning each step into image config changes and
//! layers in the store. Stages are built in plan order (dependencies first); a stage's filesystem
//! is known from its layers' headers ([`FsIndex`]) and materialised on disk only when another stage
//! copies from it.

mod copy;
pub mod progress;
mod stage;
pub mod users;

use std::collections::BTreeMap;

pub use copy::{CopyError, apply_chmod, resolve_in_root};
pub use progress::{Event, Reporter};

use crate::context::Context;
use crate::dockerfile::instructions::Dockerfile;
use crate::dockerfile::{Diagnostic, Pos};
use crate::image::manifest::Image;
use crate::layer::Compression;
use crate::plan::Plan;
use crate::store::Store;

/// Build settings that are not part of the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Layer compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: timestamps in the config and history, and the clamp for file mtimes.
    pub source_date_epoch: Option<i64>,
    /// `--label`s for the final image.
    pub labels: BTreeMap<String, String>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile or context asks for something impossible (exit 1).
    #[error("{0}")]
    Input(Diagnostic),
    /// A feature that is not built yet (exit 2).
    #[error("{0}")]
    NotSupported(Diagnostic),
    /// Store, I/O or other internal failure (exit 2).
    #[error("{0}")]
    Internal(String),
}

impl BuildError {
    /// The diagnostic to render, if the error points into the Dockerfile.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            BuildError::Input(d) | BuildError::NotSupported(d) => Some(d),
            BuildError::Internal(_) => None,
        }
    }
}

impl From<crate::store::StoreError> for BuildError {
    fn from(e: crate::store::StoreError) -> Self {
        BuildError::Internal(e.to_string())
    }
}

impl From<crate::image::manifest::ImageError> for BuildError {
    fn from(e: crate::image::manifest::ImageError) -> Self {
        BuildError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for BuildError {
    fn from(e: std::io::Error) -> Self {
        BuildError::Internal(e.to_string())
    }
}

/// Everything a build reads.
pub struct Builder<'a> {
    /// Where blobs go.
    pub store: &'a Store,
    /// The typed Dockerfile (for messages).
    pub dockerfile: &'a Dockerfile,
    /// The plan to execute.
    pub plan: &'a Plan,
    /// The build context.
    pub context: &'a Context,
    /// Settings.
    pub options: Options,
    /// Progress events go here.
    pub reporter: &'a dyn Reporter,
    /// Temporary directories to remove when the build ends.
    pub temps: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        for dir in self.temps.borrow_mut().drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Builder<'_> {
    /// Builds the target stage and returns its image (layers and config stored; the manifest is
    /// written by the caller's export).
    pub fn build(&self) -> Result<Image, BuildError> {
        let mut done: Vec<Option<stage::StageOut>> = vec![None; self.plan.stages.len()];
        for &i in &self.plan.order {
            let out = stage::build_stage(self, i, &done)?;
            done[i] = Some(out);
        }
        let target = done
            .get_mut(self.plan.target)
            .and_then(Option::take)
            .ok_or_else(|| BuildError::Internal("the target stage was not built".into()))?;
        let mut image = target.image;
        if !self.options.labels.is_empty() {
            let labels = image.config.config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(self.options.labels.clone());
        }
        Ok(image)
    }

    /// Removes `dir` when the build ends.
    pub fn keep_temp(&self, dir: std::path::PathBuf) {
        self.temps.borrow_mut().push(dir);
    }

    /// The timestamp written into configs and history.
    pub fn created(&self) -> String {
        crate::image::config::rfc3339(self.options.source_date_epoch.unwrap_or(0))
    }
}

/// Base-image facts for the planner, from the store: `oci-layout://` contexts are imported (their
/// blobs verified) so the planner sees their ENV, WORKDIR, USER and SHELL. Registry images are not
/// pulled yet, so they read as empty configs (the build then stops at their FROM).
pub struct StoreImages<'a> {
    /// The store to import into.
    pub store: &'a Store,
}

impl crate::plan::BaseImages for StoreImages<'_> {
    fn config(&self, reference: &str, platform: &crate::plan::Platform) -> crate::plan::StageState {
        let mut state = crate::plan::StageState::default();
        let Some(rest) = reference.strip_prefix("oci-layout://") else { return state };
        let (dir, tag) = stage::split_layout_ref(rest);
        let Ok((image, _)) =
            crate::image::manifest::import_layout(self.store, std::path::Path::new(dir), tag, platform)
        else {
            return state;
        };
        let c = &image.config.config;
        state.env = crate::plan::scope::EnvList(image.config.env_pairs());
        if let Some(w) = c.working_dir.as_ref().filter(|w| !w.is_empty()) {
            state.workdir = w.clone();
        }
        state.user = c.user.clone().unwrap_or_default();
        if let Some(sh) = &c.shell {
            state.shell = sh.clone();
        }
        state
    }
}

/// A located input error.
pub fn input_error(message: impl Into<String>, pos: Pos) -> BuildError {
    BuildError::Input(Diagnostic::new(message, pos))
}
