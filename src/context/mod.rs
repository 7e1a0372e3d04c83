//! The build context: what `COPY`/`ADD` may read, and the `.dockerignore` rules that filter it.

pub mod dockerignore;
