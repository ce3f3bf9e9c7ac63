"""The userspace delay line (NFQUEUE), used where the kernel has no netem."""
