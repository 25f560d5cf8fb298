"""The AWS side: the botocore client and its boundary, EC2 calls, retries, the trimmed model,
the metadata service (IMDS) and the facts it gives about this EC2 instance, partitions.
"""
