"""Training, evaluation and retraining: everything that needs pandas, scikit-learn,
scipy or matplotlib. The serving path never imports this package."""
