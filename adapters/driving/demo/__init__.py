"""``rma demo``: a scripted run of the whole system through its real interfaces."""
