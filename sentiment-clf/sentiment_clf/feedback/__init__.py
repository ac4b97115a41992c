"""Users' answers: stored, admitted, learned online, checkpointed, retrained from. The
only package that speaks SQL."""
