"""Example applications the harness is proven against (someone else's code), their seeded bugs and runs."""
