"""The one bound every wait of the soak shares (the tests shorten it)."""

#: Seconds any one wait of a case may last: long next to what a healthy server
#: needs on a busy 2-core machine, short enough that a hung case ends the run soon.
WAIT = 60.0
