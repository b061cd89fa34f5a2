//! HTTP: the server (`server`), the routes and their answers (`routes`), and the reading of
//! requests (`request`). Only the server is public: the routes are reached through it.

mod request;
mod routes;
mod server;

pub use server::Server;
