pub mod room;
pub mod session;
