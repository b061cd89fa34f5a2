//! HTTP: the server (`server`), the routes and their answers (`routes`), and the reading of
//! requests (`request`). The server is public, and so is the route table, for what must list
//! every route (the OpenAPI document's test).

mod request;
mod routes;
mod server;

pub use routes::Route;
pub use server::Server;
