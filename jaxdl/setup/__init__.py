"""Set-up helpers for ./launch.sh and `./launch.sh doctor`: which JAX build this machine
needs (accel.py) and what the committed lock pins (lockfile.py). Standard library only, so
they run before anything is installed."""
