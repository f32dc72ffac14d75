//! The DPO console (issue 17, docs/console.md): held mail, the incident
//! register and the Art. 33 draft in a browser, for the people who decide
//! on held mail without a shell on the server. Server-rendered HTML that
//! works without JavaScript; the same store as the CLI, so either can act
//! on what the other shows.
//!
//! - [`words`]: every text, German and English.
//! - [`pages`]: the pages, pure (store data in, markup out).

pub mod pages;
pub mod words;
