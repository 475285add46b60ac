//! Library side of the `tms` client: the graphql-transport-ws client, shared with the
//! end-to-end tests so there is one implementation of the protocol.

pub mod ws;
