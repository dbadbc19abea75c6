//! Gatehouse's operator console (ratatui): sessions, live view, approvals
//! queue and replay.
//!
//! Nothing is built here yet; the console arrives with its own issue and
//! will read sessions from the registry and recordings from the store that
//! `gatehouse-actors` already provides.
//!
//! Layout (planned): `app` state and `Mode`; `input` key handling; one file
//! per screen under `screens/`; rendering only reads state.
