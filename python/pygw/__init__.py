"""pygw: a real-time gateway (auth, sessions, WebSockets, channels) on uWebSockets with a Rust core."""
