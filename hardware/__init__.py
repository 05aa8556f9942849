"""Device drivers behind small interfaces: scanners, RFID readers, cameras, gate I/O."""
