"""The memory model, named after mm/*.c: folios, VMAs, page tables, faults, fork, madvise, KSM, swap, MOVE."""
