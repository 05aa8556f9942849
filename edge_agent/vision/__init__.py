"""The camera label check: find the label in a frame, run the TFLite model, read the DataMatrix."""
