"""The cloud's core: users, sites, city departments, mail and the one scope rule.

Every other domain builds on it; it imports none of them."""
