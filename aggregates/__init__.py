"""The pure core of storemon: no Kafka, Faust, HTTP or database import anywhere below here.

Time is integer microseconds since the Unix epoch (UTC) throughout; every interval is
half-open, ``[start, end)``. Functions that need "now" take it as a parameter.
"""
