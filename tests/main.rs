//! End-to-end tests: every test here drives the real `drover` binary, as a user or CI
//! would, against real files. Golden files are regenerated with
//! `DROVER_BLESS=1 cargo test -p drover --test e2e`.

mod support;

mod changes;
mod chaos;
mod cli;
mod crds;
mod dashboard;
mod diff;
mod example_app;
mod hostile;
mod jenkins;
mod observability;
mod platform;
mod policies;
mod promote;
mod releases;
mod secrets;
mod traces;
mod up;
mod validate;
mod watch;
