util:{x+1}
