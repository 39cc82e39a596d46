"""What the tests share: generated models (models.py), stand-ins for the network services
speaking their real protocols on loopback (fakes/), the per-area harnesses (actions.py,
messaging.py, admin.py, ops.py, turn_replay.py, frame_fuzz.py) and the shared fixtures
(fixtures.py, registered by tests/conftest.py)."""
