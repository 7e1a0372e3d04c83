//! Running RUN steps (not built yet): the rootless process model, user-namespace id maps, overlay
//! snapshots and libcontainer execution will live here. Today it holds the id-map logic the
//! rootless helper needs, checked up front because newuidmap reports bad ranges only as EINVAL.

pub mod idmap;
