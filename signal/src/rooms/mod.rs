//! Rooms: types and storage. HTTP handlers are in [`crate::api::rooms`].

pub mod model;
pub mod store;
