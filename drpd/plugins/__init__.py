"""Plugin providers and the supervised plugin instances that run them."""
