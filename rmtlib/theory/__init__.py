"""Random-matrix theory with numpy/scipy only: the Marchenko-Pastur law and the Tracy-Widom edge."""
