"""Running the box: systemd readiness and watchdog, graceful stop, backups, restore, upgrade,
Cloudflare Tunnel configuration and journald logging. Nothing here is on the call path."""
