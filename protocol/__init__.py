"""Contracts every part of Denen shares, with no I/O: MQTT topics and messages, the lock
wire codec, PIN windows and the clock."""
