//! `.dockerignore` reading and matching with Docker's (moby/patternmatcher) semantics.
