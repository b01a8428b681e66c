TAG = "helpers package"
