//! Build planning: stages, ARG/ENV scoping, the stage graph and `--target` pruning.
