"""creditshare: the credit information sharing API of a public credit center."""
