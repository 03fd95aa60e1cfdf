"""Shared kernel: canonical encoding, hashes, keys, typed ids, errors, wire types, Application Protocol."""
