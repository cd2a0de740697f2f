"""`python -m simulator`: run a simulated device fleet (see simulator.fleet)."""

from simulator.fleet import main

if __name__ == "__main__":
    main()
