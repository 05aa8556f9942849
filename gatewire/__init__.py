"""The contract between gate agents and the gateway.

Item identity, messages, topics and message authentication. Depends on nothing else of
provgate.
"""
