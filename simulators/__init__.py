"""Stand-ins for what a gate has no hardware or site for: devices, brokers, conveyors."""
