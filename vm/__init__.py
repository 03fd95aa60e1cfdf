"""The application: state, transactions, gas, proof of inference, build/validate/apply of blocks."""
