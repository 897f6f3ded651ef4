"""OAuth 2.0 authorization server (on authlib), signing keys, and resource protection."""
