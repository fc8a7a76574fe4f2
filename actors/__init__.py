"""Ray actors: thin adapters around raydesk's pure logic."""
