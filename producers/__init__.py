"""Traffic for floorwatch: a simulated fleet with injected failures, and replay of recordings."""
