"""Authentication: password hashing, JWT issue/verify/revocation, login flows."""
