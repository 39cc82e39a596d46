"""Stand-ins for external services, speaking their real protocols on loopback."""
